"""coffea skim: objects, selection, features and systematic variations."""
