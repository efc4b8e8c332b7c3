"""Event generation: Pythia 8, FastJet, a parametric detector response, NanoAOD writing."""
