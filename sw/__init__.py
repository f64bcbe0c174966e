"""Host-side software: datasets, bit packing, training loop, CLI."""
