"""The viewer's interface text, translated on the server and handed to the script as JSON."""

from django.utils.translation import gettext as _


def ui_strings() -> dict[str, str]:
    return {
        "loading": _("Loading images…"),
        "series": _("Series"),
        "images": _("images"),
        "layout": _("Layout"),
        "tools": _("Tools"),
        "windowLevel": _("Window/level"),
        "pan": _("Pan"),
        "zoom": _("Zoom"),
        "scroll": _("Scroll"),
        "fit": _("Fit"),
        "rotate": _("Rotate"),
        "flipH": _("Flip horizontal"),
        "flipV": _("Flip vertical"),
        "invert": _("Invert"),
        "reset": _("Reset"),
        "cine": _("Cine"),
        "length": _("Length"),
        "angle": _("Angle"),
        "ellipse": _("Ellipse ROI"),
        "rectangle": _("Rectangle ROI"),
        "probe": _("Pixel probe"),
        "mpr": _("MPR"),
        "moreTools": _("More tools"),
        "fewerTools": _("Fewer tools"),
        "stack": _("Stack"),
        "presets": _("Presets"),
        "lung": _("Lung"),
        "mediastinum": _("Mediastinum"),
        "bone": _("Bone"),
        "brain": _("Brain"),
        "abdomen": _("Abdomen"),
        "report": _("Report"),
        "noReport": _("No signed report yet."),
        "shortcuts": _("Shortcuts"),
        "shortcutsHelp": _(
            "↑/↓ or wheel: scroll · W: window/level · P: pan · Z: zoom · L: length · A: angle · E: ellipse · "
            "R: rectangle · O: probe · I: invert · H/V: flip · Space: cine · F: fit · 0: reset · 1-5: presets · M: MPR"
        ),
        "touchHelp": _(
            "One finger up or down: scroll through the images · Quick swipe left or right: next or previous series"
            " · Two fingers: zoom · Three fingers: pan"
        ),
        "previousSeries": _("Previous series"),
        "nextSeries": _("Next series"),
        "seriesPosition": _("Series %(position)s/%(count)s"),
        "swipeHint": _("Swipe the image quickly left or right to change series."),
        "reference": _("For reference only, not for diagnosis."),
        "displayWarning": _(
            "This screen has %(megapixels)s megapixels: below the %(required)s megapixels needed for diagnosis."
            " It is not suitable for diagnostic reading."
        ),
        "sessionExpired": _("Your session has expired. Open the study again from where you started."),
        "decodeFailed": _("This image cannot be decoded (transfer syntax %(syntax)s)."),
        "loadFailed": _("This image could not be loaded."),
        "tooLarge": _("This series is too large to open in the viewer (%(size)s MB; the limit is %(limit)s MB)."),
        "singleImage": _("This series has a single image: scrolling, cine and MPR do not apply."),
        "mprUnavailable": _("MPR needs a CT or MR series of at least three parallel slices."),
        "mprNeedsWebgl": _("MPR needs WebGL, which this browser does not offer."),
        "noImages": _("This series has no images to show."),
        "seriesFailed": _("The series could not be loaded."),
        "slice": _("Image"),
        "thickness": _("Thickness"),
        "mean": _("Mean"),
        "sd": _("SD"),
    }
