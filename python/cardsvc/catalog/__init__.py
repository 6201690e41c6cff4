"""The catalog: SKUs, named pools and stock (``skus``), batches of codes and their import saga
(``batches``, ``file_import``, ``codefile/``), generated codes with check characters
(``codegen``), master-key rotation over the batches' data keys (``key_rotation``), and their
tables."""

from cardsvc.catalog.batches import (
    BATCH_STATUSES,
    CHUNK_CODES,
    GENERATE_COUNT_MAX,
    GENERATE_RETRIES_MAX,
    LIST_CODES_MAX,
    REPORT_LINES_MAX,
    STAGING_POOL_BASE,
    Batches,
    BatchInfo,
    BatchMeta,
    BatchResult,
    CodeInput,
    batch_dict,
    batch_info,
)
from cardsvc.catalog.code_index import (
    suffix_digest,
    suffix_key,
    suffix_of,
    typed_suffix,
)
from cardsvc.catalog.codegen import (
    CodeFormat,
)
from cardsvc.catalog.file_import import (
    import_file,
)
from cardsvc.catalog.import_jobs import ImportJobs
from cardsvc.catalog.skus import (
    EDITABLE,
    KINDS,
    NOT_NULL,
    RETAIL_FIELDS,
    RETAIL_QUANTITY_MAX,
    SHARED_POOL,
    STAGING_POOL_MIN,
    STATES,
    Catalog,
    PoolInfo,
    check_pool_free,
    check_sku_fields,
    insert_pool,
    sku_dict,
    skus_found,
)
from cardsvc.catalog.tables import (
    Batch,
    BatchIssue,
    CodePayload,
    Pool,
    Sku,
)

__all__ = [
    "BATCH_STATUSES",
    "CHUNK_CODES",
    "EDITABLE",
    "GENERATE_COUNT_MAX",
    "GENERATE_RETRIES_MAX",
    "KINDS",
    "LIST_CODES_MAX",
    "NOT_NULL",
    "REPORT_LINES_MAX",
    "RETAIL_FIELDS",
    "RETAIL_QUANTITY_MAX",
    "SHARED_POOL",
    "STAGING_POOL_BASE",
    "STAGING_POOL_MIN",
    "STATES",
    "Batch",
    "BatchInfo",
    "BatchIssue",
    "BatchMeta",
    "BatchResult",
    "Batches",
    "Catalog",
    "CodeFormat",
    "CodeInput",
    "CodePayload",
    "ImportJobs",
    "Pool",
    "PoolInfo",
    "Sku",
    "batch_dict",
    "batch_info",
    "check_pool_free",
    "check_sku_fields",
    "import_file",
    "insert_pool",
    "sku_dict",
    "skus_found",
    "suffix_digest",
    "suffix_key",
    "suffix_of",
    "typed_suffix",
]
