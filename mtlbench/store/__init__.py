"""The dataset contract (``dataset``: DatasetSource, DataInfo, TaskSplit, MTLData) and the prepared-data store
every dataset reads: shards and their manifest (``shards``, ``manifest_check``, ``verified``), row readers
(``rows``), split schemes (``splits``), TFRecord reading (``tfrecord``) and the base of prepared datasets
(``prepared``). The datasets themselves live in ``mtlbench.data``, one file each."""
