"""mplhep figures."""
