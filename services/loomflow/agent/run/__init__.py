"""One run of the agent, by concern (DESIGN §4).

- :mod:`.loop`: the turn loop (opening calls, model call, tools, the answer);
- :mod:`.settlement`: the budget (one reservation at a time, commits, releases, warnings);
- :mod:`.journal`: the audit entries the run writes;
- :mod:`.memories`: what the run recalls from and remembers in Memory;
- :mod:`.pausing`: storing a run that waits for its caller's tools, and taking it back;
- :mod:`.limits`: the server defaults a run's options may override, and its deadlines.

:class:`loomflow.agent.runner.Runner` is the entry point; these modules are its parts.
"""
