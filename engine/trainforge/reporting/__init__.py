"""Pictures and files people look at: learning curves, confusion matrix, misclassified samples, summaries."""

from trainforge.reporting.callback import OutputOptions, RunReports, add_output_callbacks, report_after_fit
from trainforge.reporting.curves import epoch_history

__all__ = ["OutputOptions", "RunReports", "add_output_callbacks", "epoch_history", "report_after_fit"]
