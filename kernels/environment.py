"""Reading environment variables on hot paths (the backend choice per fused call, the PDL switch
per launch), shared by fastp2p.kernels and fastp2p.ops; and the PDL switch's name, here (no
triton import) so that fastp2p.bench sets the variable that fastp2p.kernels.pdl reads."""
import os

PDL_ENV_VAR = "FASTP2P_PDL"  # "1": programmatic dependent launch (fastp2p.kernels.pdl)


def getenv(name: str):
    """``os.environ.get(name)``, read from the mapping's underlying dict: the same value (os.environ
    writes through to that dict, monkeypatch.setenv included) for a twentieth of the cost
    (``get`` raises and catches a KeyError for an unset name: about a microsecond, paid on every
    fused call that asks for its backend and every launch that asks for PDL)."""
    environ = os.environ
    data = getattr(environ, "_data", None)
    if data is None:
        return environ.get(name)
    value = data.get(environ.encodekey(name))
    return None if value is None else environ.decodevalue(value)
