"""The web console: server-rendered pages for the people of the rota, under ``/`` beside the
API (docs/console.md). ``routes.add_console`` adds its routes to the HTTP app that
``voipalert serve`` builds. (Nothing is imported here, so that ``voipalert user`` can hash a
password without loading aiohttp.)"""
