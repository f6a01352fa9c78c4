"""Ground truths: each data generator sits next to its exact target, score or density."""
