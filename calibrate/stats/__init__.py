"""Pure statistics: estimators, intervals, drift tests, reliability of confidences, regional health."""
