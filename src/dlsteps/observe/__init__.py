"""What a stage shows beside its loss curves: full val metrics (``observe.metrics``),
pictures of predictions (``observe.images``) and the observer that logs both during a
stage (``observe.observer``)."""
