"""Analysis verbs over the replay and the model of time: compare presets over a trace,
predict the stress test's rate. They sit above gictools.replay and gictools.latency."""
