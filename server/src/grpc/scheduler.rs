//! `retryd.v1.Scheduler`.

use std::sync::Arc;

use retryd_client::v1 as pb;
use tonic::{Request, Response, Status};

use super::generated::scheduler_server::Scheduler as SchedulerService;
use super::{authorize, convert, error::status};
use crate::core::auth::Permission;
use crate::core::limits::Limits;
use crate::scheduler::Scheduler;
use crate::service::auth::Authenticator;
use crate::service::paging::{next_page_token, page_request};

pub struct SchedulerApi {
    scheduler: Arc<Scheduler>,
    auth: Arc<Authenticator>,
    limits: Limits,
}

impl SchedulerApi {
    pub fn new(scheduler: Arc<Scheduler>, auth: Arc<Authenticator>, limits: Limits) -> Self {
        Self {
            scheduler,
            auth,
            limits,
        }
    }
}

#[tonic::async_trait]
impl SchedulerService for SchedulerApi {
    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let tasks = self.scheduler.status().await.map_err(status)?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks: tasks.into_iter().map(convert::task).collect(),
            replica_id: self.scheduler.replica_id().to_owned(),
            leader: self.scheduler.is_leader(),
        }))
    }

    async fn run_task(
        &self,
        request: Request<pb::RunTaskRequest>,
    ) -> Result<Response<pb::TaskRun>, Status> {
        authorize(&self.auth, &request, Permission::Operate).await?;
        let name = self
            .limits
            .id("name", request.into_inner().name)
            .map_err(status)?;
        let run = self.scheduler.run_now(&name).await.map_err(status)?;
        Ok(Response::new(convert::task_run(run)))
    }

    async fn list_task_runs(
        &self,
        request: Request<pb::ListTaskRunsRequest>,
    ) -> Result<Response<pb::ListTaskRunsResponse>, Status> {
        authorize(&self.auth, &request, Permission::Read).await?;
        let request = request.into_inner();
        let page = page_request(&self.limits, request.page_size, 50, &request.page_token)
            .map_err(status)?;
        let task = (!request.task.is_empty()).then_some(request.task.as_str());
        let runs = self.scheduler.runs(task, page).await.map_err(status)?;
        Ok(Response::new(pb::ListTaskRunsResponse {
            runs: runs.items.into_iter().map(convert::task_run).collect(),
            next_page_token: next_page_token(runs.next_after),
        }))
    }
}
