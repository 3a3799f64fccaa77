//! The lock's I/O against kube-sim: identity, renewal, loss, contention.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kube_sim::{KubeSim, SimOptions};

use super::*;

const NS: &str = "default";
const NAME: &str = "jisu-deploy-staging";

fn fast() -> LockSettings {
    LockSettings {
        wait: Duration::from_secs(20),
        lease_duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(50),
        poll: Duration::from_millis(20),
    }
}

fn identity(name: &str) -> Identity {
    Identity {
        holder: name.to_owned(),
        run_url: None,
    }
}

async fn sim() -> (KubeSim, kube::Client) {
    crate::tls::ensure_provider();
    let sim = KubeSim::start(SimOptions::default()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    (sim, client)
}

fn stored(sim: &KubeSim) -> LeaseView {
    let value = sim.object("Lease", NS, NAME).expect("the Lease exists");
    view(&serde_json::from_value(value).unwrap())
}

#[test]
fn the_identity_names_the_run_and_the_process() {
    let vars = [
        ("GITHUB_SERVER_URL", "https://github.com/"),
        ("GITHUB_REPOSITORY", "jisu/platform"),
        ("GITHUB_RUN_ID", "42"),
        ("GITHUB_RUN_ATTEMPT", "2"),
    ];
    let env = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let id = Identity::new(&env, "runner-1", 77);
    assert_eq!(
        id.run_url.as_deref(),
        Some("https://github.com/jisu/platform/actions/runs/42/attempts/2")
    );
    assert_eq!(
        id.holder,
        "https://github.com/jisu/platform/actions/runs/42/attempts/2 (runner-1/77)"
    );
    let outside = Identity::new(&|_| None, "laptop", 5);
    assert_eq!(
        (outside.holder.as_str(), outside.run_url),
        ("laptop/5", None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_renewed_and_released_to_nobody() {
    let (sim, client) = sim().await;
    let held = acquire(&client, NS, NAME, identity("a"), &fast())
        .await
        .unwrap();
    let first = stored(&sim);
    assert_eq!((first.holder(), first.transitions), (Some("a"), 0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = stored(&sim);
    assert!(later.renewed > first.renewed, "renewed in the background");
    assert!(held.lost_now().is_none());
    assert_eq!(held.release().await.unwrap(), Released::Cleared);
    let after = stored(&sim);
    assert_eq!((after.holder(), after.transitions), (None, 0));
    // The next holder counts one transition.
    let next = acquire(&client, NS, NAME, identity("b"), &fast())
        .await
        .unwrap();
    assert_eq!(stored(&sim).transitions, 1);
    drop(next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_finds_another_holder_reports_the_loss_and_release_leaves_it() {
    let (sim, client) = sim().await;
    let held = acquire(&client, NS, NAME, identity("a"), &fast())
        .await
        .unwrap();
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    let mut lease = api.get(NAME).await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("thief".to_owned());
    api.replace(NAME, &PostParams::default(), &lease)
        .await
        .unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), held.lost())
        .await
        .expect("the loss is noticed at the next renewal");
    assert!(lost.to_string().contains("now held by thief"), "{lost}");
    assert!(held.lost_now().is_some());
    assert_eq!(
        held.release().await.unwrap(),
        Released::NotHeld {
            holder: Some("thief".to_owned())
        }
    );
    assert_eq!(stored(&sim).holder(), Some("thief"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_makes_the_wait_fail_naming_it() {
    let (_sim, client) = sim().await;
    let _held = acquire(&client, NS, NAME, identity("first"), &fast())
        .await
        .unwrap();
    let settings = LockSettings {
        wait: Duration::from_millis(300),
        ..fast()
    };
    let error = acquire(&client, NS, NAME, identity("second"), &settings)
        .await
        .err()
        .expect("the second waits, then gives up");
    assert!(matches!(&error, LockError::Held { holder, .. } if holder == "first"));
    let claim = current_claim(&client, NS, NAME).await.unwrap().unwrap();
    assert_eq!(claim.holder, "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contenders_hold_the_lock_one_at_a_time() {
    let (sim, client) = sim().await;
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for n in 0..6 {
        let (client, inside, most) = (client.clone(), inside.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            let held = acquire(&client, NS, NAME, identity(&format!("c{n}")), &fast())
                .await
                .unwrap();
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(60)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            assert_eq!(held.release().await.unwrap(), Released::Cleared);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two holders");
    let last = stored(&sim);
    assert_eq!(
        (last.holder(), last.transitions),
        (None, 5),
        "one create and five takes, none lost"
    );
}
