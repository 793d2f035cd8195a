//! Ready tools that are safe to hand to a model.
