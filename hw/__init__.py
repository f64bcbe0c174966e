"""xnorlearn.hw."""
