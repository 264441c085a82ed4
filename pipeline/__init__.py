"""The top floor: the chain from raw photos to cover (:mod:`pipeline.process`), CoralNet interop
(:mod:`pipeline.coralnet`) and the end-to-end demo (:mod:`pipeline.demo`). It uses the modules;
nothing below imports it."""
