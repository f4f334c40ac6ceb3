"""dagster-dask's executor on a shared, running Dask cluster, with one fix: task keys scoped to
the run.

dagster-dask 0.29.27 submits each step under the Dask key ``<job name>.<step key>``. Dask
treats equal keys as the same task, so two runs of one job on one cluster at the same time
(the shard partitions: same job, same step) share one task: the second run reports the first
run's step as its own, and its own partition is never computed (seen here: 4 of 8 shards
"succeeded" without writing anything). The key here is ``<job>.<run id>.<step key>``; the rest
is dagster-dask's own code path (``query_on_dask_worker`` runs the step in the worker).
"""

from __future__ import annotations

import dagster as dg


def _executor_class():
    from dagster_dask.executor import DaskExecutor

    class RunScopedDaskExecutor(DaskExecutor):
        def execute(self, plan_context, execution_plan):
            import dask.distributed
            from dagster._core.errors import raise_execution_interrupts
            from dagster._utils import iterate_with_context
            from dagster_dask.executor import get_dask_resource_requirements, query_on_dask_worker

            if not plan_context.instance.is_persistent:
                raise dg.DagsterInvariantViolationError("Dask execution requires a persistent DagsterInstance")
            run = plan_context.dagster_run
            with dask.distributed.Client(self.cluster_configuration["address"]) as client:
                futures, by_step = [], {}
                for level in execution_plan.get_steps_to_execute_by_level():
                    for step in level:
                        dependencies = [by_step[k] for step_input in step.step_inputs
                                        for k in step_input.dependency_keys]
                        future = client.submit(
                            query_on_dask_worker, dependencies, plan_context.reconstructable_job, run,
                            plan_context.run_config, [step.key], plan_context.instance.get_ref(),
                            execution_plan.known_state, key=f"{plan_context.job_name}.{run.run_id}.{step.key}",
                            resources=get_dask_resource_requirements(step.tags))
                        futures.append(future)
                        by_step[step.key] = future
                done = dask.distributed.as_completed(futures, with_results=True)
                for _, events in iterate_with_context(raise_execution_interrupts, done):
                    yield from events

    return RunScopedDaskExecutor


@dg.executor(
    name="dask",
    config_schema={"address": dg.Field(dg.StringSource, description="The Dask scheduler, e.g. tcp://host:8786 "
                                       "or {env: DOMRET_DASK_SCHEDULER}")},
    requirements=dg.multiple_process_executor_requirements(),
)
def run_scoped_dask_executor(init_context):
    """Each step of the run on a worker of the running Dask cluster at ``address``."""
    return _executor_class()("existing", {"address": init_context.executor_config["address"]})
