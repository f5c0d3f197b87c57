"""`unetkit review`: a local web page to correct the model's most doubtful masks and train on them.

ranking.py (the doubt score), predictions.py (cached masks and scores), store.py (what is written
under LABELS), session.py (the review's state), server.py (HTTP), finetune.py (the background
fine-tune), static/ (the page: plain HTML, CSS and JavaScript on a canvas, no build step).
"""
