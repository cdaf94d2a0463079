"""Sidecar host tools: onboarding, pm2, doctor, resource reports, agent names."""
