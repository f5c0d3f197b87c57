"""`unetkit review`: a local web page to correct the model's most doubtful masks and train on them.
The page (static/) is plain HTML, CSS and JavaScript on a canvas, with no build step.
"""
