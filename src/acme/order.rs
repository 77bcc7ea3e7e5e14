//! One order, from the account to the stored certificate (RFC 8555 with DNS-01).

use std::collections::BTreeMap;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use log::info;

use super::{client, self_check, Acme, AcmeError, ORDER_TIMEOUT, POLL_START};

impl Acme {
    fn account_builder(&self) -> Result<instant_acme::AccountBuilder, AcmeError> {
        let http =
            client::TimedClient::new(self.cfg.directory_ca.as_deref(), self.cfg.request_timeout)?;
        Ok(Account::builder_with_http(Box::new(http)))
    }

    /// The stored account, or a new one. Of two replicas creating one at once (a lock
    /// taken over mid-way), the store keeps the first, and both use it.
    async fn account(&self) -> Result<Account, AcmeError> {
        if let Some(json) = self.store.read_account().await? {
            let creds: AccountCredentials = serde_json::from_str(&json)?;
            return Ok(self.account_builder()?.from_credentials(creds).await?);
        }
        let contact: Vec<&str> = self.cfg.contact.iter().map(String::as_str).collect();
        let (account, creds) = self
            .account_builder()?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.cfg.directory.clone(),
                None,
            )
            .await?;
        let ours = serde_json::to_string(&creds)?;
        let stored = self.store.create_account(&ours).await?;
        if stored == ours {
            info!("acme: account created at {}", self.cfg.directory);
            return Ok(account);
        }
        info!("acme: another replica stored an account first; using it");
        let creds: AccountCredentials = serde_json::from_str(&stored)?;
        Ok(self.account_builder()?.from_credentials(creds).await?)
    }

    /// Places the order for `*.domain` and `domain` and stores the certificate. The values
    /// it publishes are recorded in `self.published` first, so whoever ends the order
    /// (done, failed, or cut short by a deadline) withdraws them.
    pub(super) async fn order(&self, domain: &str) -> Result<(), AcmeError> {
        let names = [format!("*.{domain}"), domain.to_string()];
        let ids: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
        let account = self.account().await?;
        let mut order = account.new_order(&NewOrder::new(&ids)).await?;

        // The wildcard and the bare name share one TXT name and need both values at once:
        // publish everything, then say ready.
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut auths = order.authorizations();
        while let Some(a) = auths.next().await {
            let mut a = a?;
            if a.status != AuthorizationStatus::Pending {
                continue; // already valid (a CA may reuse a recent authorization)
            }
            let ch = a
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| AcmeError::NoDnsChallenge(domain.to_string()))?;
            // The identifier without `*.` (the authorization of `*.d` is for `d`).
            let base = match ch.identifier().identifier {
                Identifier::Dns(d) => d.trim_start_matches("*.").to_ascii_lowercase(),
                _ => return Err(AcmeError::NoDnsChallenge(domain.to_string())),
            };
            values
                .entry(format!("_acme-challenge.{base}"))
                .or_default()
                .push(ch.key_authorization().dns_value());
        }
        for (name, v) in &values {
            self.published
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((name.clone(), v.clone()));
            self.challenges.publish(name, v);
            self.store.publish(name, v).await?;
        }
        // Every DNS server the CA may ask must answer before the CA asks.
        for (name, v) in &values {
            self_check::wait_until_answered(
                &self.cfg.self_check,
                name,
                v,
                self.cfg.self_check_timeout,
            )
            .await?;
        }
        let mut auths = order.authorizations();
        while let Some(a) = auths.next().await {
            let mut a = a?;
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut ch) = a.challenge(ChallengeType::Dns01) {
                ch.set_ready().await?;
            }
        }
        let retry = RetryPolicy::new()
            .initial_delay(POLL_START)
            .timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retry).await?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::NotReady(status));
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        // rcgen's default subject is "rcgen self signed cert"; the CA fills it in.
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&retry).await?;
        self.store
            .write_cert(domain, &chain, &key.serialize_pem())
            .await?;
        Ok(())
    }
}
