"""Learn: see what a CNN computes on your own model. The convolution drawn and stepped through,
receptive fields on an image (theoretical and effective), filters beside their feature maps,
block diagrams, what each classic network introduced, and the model as code to copy.

Arrays, images and text only (the CLI writes files, the app shows them); beside anatomy/
and explain/, whose numbers it draws.
"""
