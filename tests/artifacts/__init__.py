"""Artefact tests: the files the repo ships beside its code (the Logic Apps samples and the curl lines of the docs,
the openings and recipes of the README and docs, the Power Platform connector's definition, the Bicep in
``infra/``), checked against the code's contract. No Azurite, no host: they read files (``test_infra.py`` runs the
offline checkers of ``.venv-iac``; ``test_samples.py`` runs the stdlib webhook receiver sample on a free port). A
package, so its module names never clash with the other layers'."""
