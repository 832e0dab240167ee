"""Labels: import, reference scorers, the LLM judge, the labelling queue."""
