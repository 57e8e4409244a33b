"""Every file name of a run directory (a contract), spelled here and nowhere else::

runs/<name>-<YYYYmmdd-HHMMSS>/
  config.yaml                  the fully resolved config
  summary.json                 the verdict, rewritten atomically after each stage
  data_stats.json              label counts and content hashes
  image_stats.json             folder sources: per-channel mean/std of the train images
  report.html                  the self-contained report
  run.lock                     PID, host and start of the process writing the run (while it runs)
  <stage>/scalars.jsonl        one {"step", "tag", "value", "time"} per logged value
  <stage>/events.out.tfevents.*  the same scalars (and pictures) for TensorBoard
  <stage>/verdict.json         that stage's status, diagnoses and key figures
  <stage>/findings.json        what checks that needed the model found (judged too)
  <stage>/batch.png            the first train batch as it entered the model
  <stage>/worst.png            full-data: the val samples with the highest loss
  <stage>/lr_sweep.json        an LR sweep (dlsteps lr-find, or advice tried)
  <stage>/checkpoint.pt        for --resume and for init_from
  <stage>/metrics.json         stage-end val metrics and confusion matrix
  <stage>/samples.png          input / target / prediction of fixed val samples
  <stage>/samples.txt          language models: generations from the starts of val blocks
  <stage>/trace/               torch.profiler traces (dlsteps profile --trace)
"""

CONFIG_YAML = "config.yaml"
SUMMARY_JSON = "summary.json"
DATA_STATS_JSON = "data_stats.json"
IMAGE_STATS_JSON = "image_stats.json"
REPORT_HTML = "report.html"
RUN_LOCK = "run.lock"  # the one process that writes the run directory (rundir.lock)

SCALARS_JSONL = "scalars.jsonl"
EVENTS_GLOB = "events.out.tfevents.*"
PICTURES_SUFFIX = ".pictures"  # the event file of pictures and HParams beside the scalars
VERDICT_JSON = "verdict.json"
FINDINGS_JSON = "findings.json"  # what checks that needed the model found (judged too)
BATCH_PNG = "batch.png"  # the first train batch as it entered the model
WORST_PNG = "worst.png"  # full-data: the highest-loss val samples
LR_SWEEP_JSON = "lr_sweep.json"  # a learning-rate sweep's curve
CHECKPOINT_PT = "checkpoint.pt"
METRICS_JSON = "metrics.json"
SAMPLES_PNG = "samples.png"
SAMPLES_TXT = "samples.txt"
TRACE_DIR = "trace"
