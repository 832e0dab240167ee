"""The sweep stage: every candidate policy evaluated, certified, selected and diagnosed; evaluate."""
