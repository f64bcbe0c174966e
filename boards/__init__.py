"""xnorlearn.boards."""
