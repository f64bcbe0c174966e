"""xnorlearn.sim."""
