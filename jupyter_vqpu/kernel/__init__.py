"""The kernel face: the %%vqpu magic, the live widget, the HTTP transport and the Qiskit backend."""
