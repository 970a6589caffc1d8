"""Split computing: a classifier's head replaced by a learned encoder whose entropy-coded bytes a server decodes."""
