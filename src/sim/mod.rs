//! Simulated Kubernetes API and Keeptrusts services.
