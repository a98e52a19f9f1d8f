"""The sink race: our consumer against other sinks on the same change topic and store.

``race.run`` produces the topic content and drives each sink; ``race.result`` turns what
the watcher saw into the report's race section (figures, table, plots).
"""
