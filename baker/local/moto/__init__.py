"""Extensions to moto 5.2.5: what the emulator lacks and baker's pipeline needs, one module per gap.

Every gap below was measured against plain moto 5.2.5 in server mode (boto3 and the Terraform AWS
provider 5.100.0, inside a loopback-only namespace) before it was filled here:

1. Auto Scaling instance refresh is missing: ``StartInstanceRefresh``, ``DescribeInstanceRefreshes``,
   ``CancelInstanceRefresh`` and ``RollbackInstanceRefresh`` answer HTTP 500 (NotImplementedError);
   the provider retries the start for 15 minutes. Added: batches honouring Min/MaxHealthyPercentage,
   replacements launched from the version the refresh (or the group) asks for, registered with the
   group's target groups, old instances deregistered first and terminated once the load balancers
   serve no request of theirs (or their deregistration delay has passed: Auto Scaling's
   WaitingForELBConnectionDraining); Pending -> InProgress -> Successful / Failed / Cancelled (and
   the Rollback* states), advanced by a background thread. A batch whose replacements are not
   healthy within ``Settings.refresh_timeout`` fails the refresh. (baker.local.moto.refresh)
2. Target health cannot be driven: every registered target reports ``healthy`` forever. Now a live
   instance's target (baker.local.instances) reports what real checks inside the instance say
   (baker.local.health: initial, healthy, unhealthy, draining for the deregistration delay); an
   instance that is only a record reports ``initial`` for ``Settings.initial_seconds`` after its
   launch, then ``healthy``. The fault-injection override (``POST /_baker/health``) beats both: an
   AMI set to ``initial``, ``healthy`` or ``unhealthy`` reports that from the moment it is set.
   A group with health_check_type ELB replaces live instances unhealthy past the grace period.
3. Auto Scaling and target groups drift apart: terminated instances stay registered and ``healthy``
   (TerminateInstanceInAutoScalingGroup, scale-in) and the replacements the group launches after an
   EC2 TerminateInstances are never registered. Now every termination leaves the target groups and
   every replacement is registered.
4. ``CreateLaunchTemplateVersion`` stores UserData as a plain string (the provider always sends
   ``UserData=""``), so any group launch from version >= 2 crashes with an AssertionError (HTTP 500).
5. ``CreateLaunchTemplate`` copies the template's own tags into version 1's data, so every Terraform
   plan after the create shows a diff (and would start a refresh nobody asked for).
6. The group reports every instance as launched from the template's current default version; now each
   instance reports the version it really came from.
7. ``CopyImage`` ignores ``CopyImageTags`` and ``TagSpecifications`` (the copy has no tags), ignores
   ``Encrypted``/``KmsKeyId``, and the copy reports root device type ``standard`` on /dev/sda1
   whatever its source was. Now: tags as asked, EBS-backed like the source, encrypted when asked.
8. ``CreateImage`` with ``snapshot`` TagSpecifications answers HTTP 500 (NotImplementedError), and the
   image ignores the instance's root volume: always an unencrypted 15 GiB ``standard`` snapshot (an
   encrypted gp3 root, as Packer launches it, gives an unencrypted image). Now the image's root
   snapshot has the root volume's size, type, encryption and KMS key, and tagged snapshots.
9. No Debian source image: added ``debian-12-amd64-baker-local`` owned by 136693071363, public,
   EBS-backed (/dev/xvda with a snapshot), in every region of every account.
10. ``DescribeTrafficSources`` answers HTTP 500; now it lists the group's target groups.
11. One account only: moto reads an access key id only when it has 20 characters and maps it to an
    account only when IAM issued it, so every request lands in 123456789012 whatever the key. Now a
    12-digit access key id is the account id,
    and an image shared with an account (ModifyImageAttribute launch permission) is visible to it
    (DescribeImages by id, ExecutableUsers=self) and can be copied by it (CopyImage), as promotion
    between accounts needs.
12. Every EC2 resource finds its own tags by scanning every tag of the region (a regex per call),
    so DescribeImages and DescribeSnapshots over N tagged resources take O(N^2): 3,000 AMIs
    answer in 10 s, 10,000 outlast botocore's 60 s read timeout (gc's benchmark). Now a resource
    reads its own tags from the tag store by its id.

Not emulated (the pipeline does not need them): InstanceWarmup, CheckpointPercentages, BakeTime and
alarms of a refresh (recorded in Preferences, not waited on); an ELB-unhealthy instance that is only a
record is not replaced by the group; warm pools during a refresh.

13. Instances are records only. Now an instance of an AMI whose root snapshot holds blocks (gap
    16: baked in this local cloud, or registered from an uploaded snapshot) boots that disk
    (baker.local.instances); stop, start and terminate act on its container; a deregistered AMI
    loses its content; GetConsoleOutput answers the container's console (cloud-init prints the
    SSH host keys there, as on EC2). Each ALB HTTP listener answers on loopback (baker.local.lb).
14. A copied image is ``available`` at once. With ``Settings.copy_seconds`` it stays ``pending``
    that long, as EC2 keeps a copy while its snapshots copy (the promotion benchmark measures
    whether copies to several regions run concurrently).
15. CloudWatch has no load balancer metrics, and GetMetricStatistics matches any datapoint whose
    dimensions include the asked ones (AWS: exactly the asked set). Now the answers the local load
    balancers relay or make are ``AWS/ApplicationELB`` metrics (``HTTPCode_Target_5XX_Count`` per
    target group, ``HTTPCode_ELB_5XX_Count``, ...), matched exactly (baker.local.moto.metrics).
16. Images have no lifecycle: a disabled image still launches and is listed, and there is no
    deprecation, no deregistration protection and no ``LastLaunchedTime``. Now EnableImageDeprecation
    and DisableImageDeprecation set ``DeprecationTime``; a disabled image cannot launch
    (``InvalidAMIID.Unavailable``) and is listed only with ``IncludeDisabled``; a protected image
    cannot be deregistered (``OperationNotPermitted``); every launch sets ``LastLaunchedTime``.
17. ``DescribeImageReferences`` answers HTTP 500. Now it lists the instances and launch templates
    of the caller's region that use the images.
18. An HTTPS listener needs an ACM certificate that exists before the listener, but moto's ARNs are
    random (no environment file can name one) and what it issues is signed by no CA a client has;
    its listeners answer nowhere, HTTPS or redirect. Now every account and region holds the local
    cloud's own certificate at a fixed ARN (its CA is GetCertificate's chain), HTTPS listeners
    terminate TLS with their certificate and redirect actions answer (baker.local.lb).
19. The EBS direct APIs keep blocks in memory, only for snapshots StartSnapshot made (an AMI's
    root snapshot answers HTTP 500), report 512-byte blocks, ignore ParentSnapshotId, Encrypted,
    KmsKeyArn, DataLength and pagination, take every checksum at face value, complete whatever
    ChangedBlocksCount says, and a started snapshot is ``completed`` at once. Now every snapshot's
    blocks are a sparse file on disk (baker.local.blocks, 512 KiB blocks), a child starts with its
    parent's blocks, checksums and counts are checked, pages are paged, a snapshot is ``pending``
    until CompleteSnapshot, and DeleteSnapshot, CopySnapshot and CopyImage free or copy the blocks.
20. ``RegisterImage`` ignores the block device mappings: every registered image gets an empty
    15 GiB snapshot of its own, whatever snapshot it names. Now the root device's mapping names the
    snapshot the image boots (an instance of it boots that snapshot's blocks, gap 13), with the
    image's architecture, boot mode and ENA support as registered.
21. IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``) matches a statement's Action only: every call
    but S3's has the resource ``*``, and conditions other than ``StringEquals`` on request
    parameters are ignored. Now an assumed role's policies are evaluated with the call's resource
    ARN and the condition keys the example policies use, and every call is recorded
    (baker.local.moto.policy_evaluation).

Where each gap is filled: 1 and 10 ``refresh``, 2 ``target_health``, 3 ``termination``, 4-6
``launch_templates``, 7-9, 14 and 20 ``images``, 11 ``accounts``, 12 ``tags``, 13 ``live_instances`` and
``load_balancers``, 15 ``metrics``, 16 ``image_lifecycle``, 17 ``image_references``, 18
``certificates`` and ``load_balancers``, 19 ``ebs_direct``, 21 ``policy_evaluation``; the request
path's ``throttling`` (a knob that answers as AWS throttles) and ``retries`` (a retried call that was
carried out gets its first answer). Their shared state (knobs, lock, live instances, the block
store) is ``state``. The emulator's own endpoints (``/_baker/...``) are in baker.local.api.
``install()`` applies all of it once per process, before the server starts.
"""

from __future__ import annotations

_installed = False


def after_health_checks() -> None:
    """What follows each round of health checks: ELB replacements, then the load balancers' targets."""
    from baker.local.moto import load_balancers, target_health

    target_health.replace_elb_unhealthy()
    load_balancers.sync_load_balancers()


def install() -> None:
    """Apply every extension (idempotent). Call before the server starts."""
    from baker.local.moto import (
        accounts,
        certificates,
        ebs_direct,
        image_lifecycle,
        image_references,
        images,
        launch_templates,
        live_instances,
        metrics,
        policy_evaluation,
        refresh,
        tags,
        target_health,
        termination,
    )

    global _installed
    if _installed:
        return
    target_health.install()
    termination.install()
    launch_templates.install()
    images.install()
    refresh.install()
    accounts.install()
    tags.install()
    live_instances.install()
    metrics.install()
    image_lifecycle.install()  # after live_instances: a disabled image is refused before it boots
    image_references.install()
    certificates.install()
    ebs_direct.install()
    policy_evaluation.install()
    _installed = True
