//! The HTTP calls of each Nacos API version, as methods of [`NacosSource`]: GET with the
//! access token (in headers), the v2/v3 `{code, message, data}` wrapper, the service list (v1, v2), one
//! service's instances (v1, v2) and Nacos 3's services with their instances.

use serde::de::DeserializeOwned;

use super::model::{InstanceList, PageV3, ServiceDetailV3, ServiceListV1, ServiceListV2, V2};
use super::{NacosError, NacosSource, PAGE_SIZE};
use crate::config::{EurekaUrl, NacosApi};

impl NacosSource {
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        base: &EurekaUrl,
        path: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
    ) -> Result<T, NacosError> {
        let url = format!("{}{path}", base.base);
        let mut req = self.http.get(&url).query(query);
        if let Some(t) = token {
            // In headers, never in the URL (which error texts and server logs carry):
            // `Authorization: Bearer` is read by Nacos 1.x to 3.x and rnacos, `accessToken`
            // by Nacos 2.x/3.x's auth plugin and rnacos.
            req = req.bearer_auth(t).header("accessToken", t);
        }
        let resp = req.send().await.map_err(|e| self.error(&url, e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| self.error(&url, e))?;
        if !(200..300).contains(&status) {
            if matches!(status, 401 | 403) {
                // A token the server no longer accepts: log in again next time.
                *self.token.lock().await = None;
            }
            return Err(NacosError::Status {
                url,
                status,
                body: crate::names::printable(&String::from_utf8_lossy(
                    &body[..body.len().min(200)],
                ))
                .to_string(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| NacosError::Parse {
            url,
            reason: e.to_string(),
        })
    }

    /// The v2 API wraps every answer; a non-zero code is an error even with HTTP 200.
    pub(super) fn unwrap_v2<T>(
        &self,
        base: &EurekaUrl,
        path: &str,
        v: V2<T>,
    ) -> Result<T, NacosError> {
        match (v.code, v.data) {
            (0, Some(d)) => Ok(d),
            (code, _) => Err(NacosError::Api {
                url: format!("{}{path}", base.base),
                code,
                message: v.message.unwrap_or_default(),
            }),
        }
    }

    pub(super) async fn services(
        &self,
        base: &EurekaUrl,
        ns: &str,
        group: &str,
        token: Option<&str>,
    ) -> Result<Vec<String>, NacosError> {
        let mut all = Vec::new();
        let size = PAGE_SIZE.to_string();
        for page in 1u32.. {
            let p = page.to_string();
            let q = [
                ("pageNo", p.as_str()),
                ("pageSize", size.as_str()),
                ("namespaceId", ns),
                ("groupName", group),
            ];
            let (count, names) = match self.cfg.api {
                // v3 lists services with their instances (`services_v3`) and never asks
                // here; its servers keep the v1 open API (3.0, 3.1) anyway.
                NacosApi::V1 | NacosApi::V3 => {
                    let l: ServiceListV1 = self.get(base, "/v1/ns/service/list", &q, token).await?;
                    (l.count, l.doms)
                }
                NacosApi::V2 => {
                    let path = "/v2/ns/service/list";
                    let v: V2<ServiceListV2> = self.get(base, path, &q, token).await?;
                    let l = self.unwrap_v2(base, path, v)?;
                    (l.count, l.services)
                }
            };
            let got = names.len();
            all.extend(names);
            if got == 0 || all.len() as u64 >= count {
                break;
            }
        }
        Ok(all)
    }

    pub(super) async fn instances(
        &self,
        base: &EurekaUrl,
        ns: &str,
        group: &str,
        service: &str,
        token: Option<&str>,
    ) -> Result<InstanceList, NacosError> {
        let q = [
            ("serviceName", service),
            ("groupName", group),
            ("namespaceId", ns),
            ("healthyOnly", "false"),
        ];
        match self.cfg.api {
            NacosApi::V1 | NacosApi::V3 => self.get(base, "/v1/ns/instance/list", &q, token).await,
            NacosApi::V2 => {
                let path = "/v2/ns/instance/list";
                let v: V2<InstanceList> = self.get(base, path, &q, token).await?;
                self.unwrap_v2(base, path, v)
            }
        }
    }

    /// Nacos 3: every service of one namespace and group with its instances, a page at a
    /// time. The group parameter is a pattern on the server (`.*group.*`), so the answer
    /// is filtered to the group itself here.
    pub(super) async fn services_v3(
        &self,
        base: &EurekaUrl,
        ns: &str,
        group: &str,
        token: Option<&str>,
    ) -> Result<Vec<ServiceDetailV3>, NacosError> {
        let path = "/v3/admin/ns/service/list";
        let ns = if ns.is_empty() { "public" } else { ns };
        let size = PAGE_SIZE.to_string();
        let mut all = Vec::new();
        for page in 1u32.. {
            let p = page.to_string();
            let q = [
                ("namespaceId", ns),
                ("groupNameParam", group),
                ("serviceNameParam", ""),
                ("withInstances", "true"),
                ("ignoreEmptyService", "false"),
                ("pageNo", p.as_str()),
                ("pageSize", size.as_str()),
            ];
            let v: V2<PageV3<ServiceDetailV3>> = self.get(base, path, &q, token).await?;
            let l = self.unwrap_v2(base, path, v)?;
            let got = l.page_items.len();
            let seen = (page - 1) as u64 * u64::from(PAGE_SIZE) + got as u64;
            all.extend(l.page_items.into_iter().filter(|s| s.group_name == group));
            if got == 0 || seen >= l.total_count {
                break;
            }
        }
        Ok(all)
    }
}
