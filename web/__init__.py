"""Web features: what the bot serves over HTTP beside the chat (bot/web is the server).

Like handlers/, this layer reads input, calls services/ and storage/, and renders a reply
(here HTTP); only the composition root (bot/app.py) imports it."""
