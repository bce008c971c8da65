"""The recommendation stage: behaviour in, collaborative filtering, gating, evaluation."""
