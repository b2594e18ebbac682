"""The console's one layer between pages and services (and the only part of `observability` that
imports Streamlit): `common` (store, user, guards, layout, URL filters, caching), `nav` (the page
registry), `frames` (services' results as pandas frames), `data` (the cached reads pages call) and
`charts` (plotly figures). May import the services and the contract modules; pages import from here.
"""
