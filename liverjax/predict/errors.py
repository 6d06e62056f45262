"""The error of prediction: bad input, named in one line."""


class PredictError(ValueError):
  """Bad input to prediction; the message names the file and the problem."""
