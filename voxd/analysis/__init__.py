"""Post-call analysis: what a business keeps from a call besides its transcript."""
