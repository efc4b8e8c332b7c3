"""The learned skim (LearnCuts, ReduceEvents): cut objectives, learned thresholds, reduced tables."""
