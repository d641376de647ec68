"""The 2016 blog study, built on the core: the blog's MLP, data, training and variants, its
checkpoints and replay, the convnet study, the findings, captions, figures and the report site's
words. Importing it registers the blog's saliencies (``"blog_magnitude"``, ``"blog_obd"``)."""

from obd.study import blog_saliency as _blog_saliency  # noqa: F401  (registers the blog's kinds)
