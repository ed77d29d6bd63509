"""camcli's commands as plain functions: a typed request in, a typed result out.

``camcli.cli`` parses the command line into a request, calls the function, prints the result and maps
it to an exit code; the Python API calls the same functions. Each module here imports the heavy
libraries inside its function, so the command line answers --help and usage errors at once.

| command | function | request → result |
|---|---|---|
| explain | ``explain.explain`` | ``ExplainJob`` → ``ExplainResult`` |
| evaluate | ``evaluate.evaluate`` | ``EvaluateJob`` → ``EvaluateResult`` |
| compare | ``compare.compare`` | ``CompareRequest`` → ``CompareResult`` |
| report | ``report.report`` | ``ReportRequest`` → ``Path`` of the page |
| merge | ``merge.merge`` | the output folder → ``MergeResult`` |
| layers | ``layers.layers`` | ``LayersRequest`` → ``LayersResult`` |
| models | ``models.models`` | pattern, source → names |
"""
