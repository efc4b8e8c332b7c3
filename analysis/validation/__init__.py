"""Paper toys that validate the method: arXiv:2003.07186's Gaussian toy and Watts' cut toy."""
