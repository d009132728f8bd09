"""Training loops (solvers): codec now, the LM later."""
