"""The explorer: one offline HTML file that runs a trained run's encoder and decoder in the browser.

`export.payload(run)` gathers what the page needs (weights, a test subset, its
codes and their statistics) as one JSON object, whose contract the export
module's docstring states; `page.render(payload)` puts it, the page's script
and its style into one HTML file, and `page.write_explorer(RUN)` writes
RUN/explorer.html. Nothing is imported here: `vaelab.explorer.page` pulls in
Jinja2 and `vaelab.explorer.export` PyTorch only when used.
"""
