"""The stand-in API server's own tests (tests/kube-apiserver/test_server.py), run as part of
the end-to-end suite so that `make test` covers the tool the controller tests depend on.
Each test class is re-declared here so its ids read test_kube_apiserver.<Class>.<test>.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kube-apiserver"))
import test_server  # noqa: E402

for _name, _cls in list(vars(test_server).items()):
    if _name.startswith("Test") and isinstance(_cls, type) and issubclass(_cls, unittest.TestCase):
        globals()[_name] = type(_name, (_cls,), {"__module__": __name__})
del _name, _cls
