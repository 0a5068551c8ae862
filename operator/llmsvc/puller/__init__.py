"""Weight pre-pull for the init container: ``llmsvc pull URI DEST`` fills a shared cache once.

``layout`` (pure, standard library only) decides where a model lives under DEST; ``pull`` runs the
cache protocol (marker, lock, resume, verify); ``transfer`` moves bytes, ``parts`` tracks partial
files and decides when they may be resumed; ``sources`` talk to hubs.
"""
