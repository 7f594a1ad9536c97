"""The DAG parsing runtime: a DAG processor whose parse children run in containers."""
