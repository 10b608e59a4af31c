"""``memsaga doctor``: what a deployment needs, checked (see :mod:`memsaga.doctor.report`)."""
