"""Understanding short Chinese replies: built-in rules and Rasa over HTTP."""
