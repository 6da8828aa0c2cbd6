/* test-tnve-events.c: Check suite for tnve-agent's event -> action table
 * (tnve-agent/events.c): every mapping of issue 4's list, the listing table, and the
 * consistency between the two (a domain reached by events and the same domain found by a
 * listing end up in the same desired state).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>

#include "../../tnve-agent/events.h"
#include "sncp-msg.h"

struct expect {
    int event, detail;
    enum tnve_effect effect;
    uint16_t flags;
    int refresh;
};

#define MIG SNCP_F_MIGRATION
#define SRC (SNCP_F_MIGRATION | SNCP_F_MIGRATION_SOURCE)

static const struct expect expected[] = {
    /* start (booted), restore, incoming-migration finish -> Activate; migration flagged */
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED, TNVE_EFFECT_ACTIVATE, 0, 1},
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_RESTORED, TNVE_EFFECT_ACTIVATE, 0, 1},
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT, TNVE_EFFECT_ACTIVATE, 0, 1},
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_WAKEUP, TNVE_EFFECT_ACTIVATE, 0, 1},
    {VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_MIGRATED, TNVE_EFFECT_ASSOCIATE, MIG, 1},
    {VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_MIGRATED, TNVE_EFFECT_ACTIVATE, MIG, 1},
    {VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_POSTCOPY, TNVE_EFFECT_ACTIVATE, MIG, 1},
    /* pause -> nothing */
    {VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED, TNVE_EFFECT_NONE, 0, 0},
    {VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_IOERROR, TNVE_EFFECT_NONE, 0, 0},
    {VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED, TNVE_EFFECT_NONE, 0, 0},
    /* managed save / PM suspend / suspend-to-disk -> Deactivate (stays Associated) */
    {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SAVED, TNVE_EFFECT_ASSOCIATE, 0, 1},
    {VIR_DOMAIN_EVENT_PMSUSPENDED, VIR_DOMAIN_EVENT_PMSUSPENDED_MEMORY, TNVE_EFFECT_ASSOCIATE, 0,
     0},
    {VIR_DOMAIN_EVENT_PMSUSPENDED, VIR_DOMAIN_EVENT_PMSUSPENDED_DISK, TNVE_EFFECT_ASSOCIATE, 0, 0},
    /* resume -> Activate */
    {VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_UNPAUSED, TNVE_EFFECT_ACTIVATE, 0, 0},
    /* shutdown, destroy, crash, failure -> De-Associate (inactive rule) */
    {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, TNVE_EFFECT_INACTIVE, 0, 1},
    {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED, TNVE_EFFECT_INACTIVE, 0, 1},
    {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_CRASHED, TNVE_EFFECT_INACTIVE, 0, 1},
    {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_FAILED, TNVE_EFFECT_INACTIVE, 0, 1},
    {VIR_DOMAIN_EVENT_CRASHED, VIR_DOMAIN_EVENT_CRASHED_PANICKED, TNVE_EFFECT_DEASSOCIATE, 0, 0},
    /* source side after outgoing migration -> De-Associate with the migration flag */
    {VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_MIGRATED, TNVE_EFFECT_DEASSOCIATE, SRC, 0},
    /* undefine -> nothing left; define -> inactive rule (optionally Associate) */
    {VIR_DOMAIN_EVENT_UNDEFINED, VIR_DOMAIN_EVENT_UNDEFINED_REMOVED, TNVE_EFFECT_UNDEFINE, 0, 1},
    {VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED, TNVE_EFFECT_INACTIVE, 0, 1},
    {VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_UPDATED, TNVE_EFFECT_INACTIVE, 0, 1},
    {VIR_DOMAIN_EVENT_SHUTDOWN, VIR_DOMAIN_EVENT_SHUTDOWN_GUEST, TNVE_EFFECT_NONE, 0, 0},
    /* NIC hot-plug / unplug, metadata: the XML again */
    {TNVE_EVENT_DEVICE_ADDED, 0, TNVE_EFFECT_NONE, 0, 1},
    {TNVE_EVENT_DEVICE_REMOVED, 0, TNVE_EFFECT_NONE, 0, 1},
    {TNVE_EVENT_METADATA_CHANGE, 0, TNVE_EFFECT_NONE, 0, 1},
};

START_TEST(test_issue_mapping)
{
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const struct expect *e = &expected[i];
        const struct tnve_event_action *a = tnve_event_lookup(e->event, e->detail);
        ck_assert_msg(a->effect == e->effect, "event %d/%d: effect %s, expected %s", e->event,
                      e->detail, tnve_effect_name(a->effect), tnve_effect_name(e->effect));
        ck_assert_msg(a->flags == e->flags, "event %d/%d: flags 0x%x", e->event, e->detail,
                      a->flags);
        ck_assert_msg(a->refresh == e->refresh, "event %d/%d: refresh %d", e->event, e->detail,
                      a->refresh);
    }
}
END_TEST

START_TEST(test_unknown_and_table)
{
    const struct tnve_event_action *a = tnve_event_lookup(999, 3);
    ck_assert_int_eq(a->effect, TNVE_EFFECT_NONE);
    ck_assert_str_eq(a->name, "unknown");
    /* an unknown detail of a known event takes the event's wildcard entry */
    a = tnve_event_lookup(VIR_DOMAIN_EVENT_STARTED, 77);
    ck_assert_int_eq(a->effect, TNVE_EFFECT_ACTIVATE);
    unsigned n;
    const struct tnve_event_action *t = tnve_event_table(&n);
    ck_assert_uint_gt(n, 10);
    for (unsigned i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(t[i].name);
        for (unsigned k = 0; k < i; k++)
            ck_assert_msg(t[i].event != t[k].event || t[i].detail != t[k].detail,
                          "duplicate entry %s", t[i].name);
    }
}
END_TEST

START_TEST(test_listing_matches_events)
{
    const char *name;
    ck_assert_int_eq(tnve_event_effect_for_state(VIR_DOMAIN_RUNNING, 0, 0, &name),
                     TNVE_EFFECT_ACTIVATE);
    /* paused: a known domain keeps its state, an unknown one counts as running */
    ck_assert_int_eq(tnve_event_effect_for_state(VIR_DOMAIN_PAUSED, 0, 1, &name), TNVE_EFFECT_NONE);
    ck_assert_int_eq(tnve_event_effect_for_state(VIR_DOMAIN_PAUSED, 0, 0, &name),
                     TNVE_EFFECT_ACTIVATE);
    /* the same result as the event that leads to each state */
    ck_assert_int_eq(tnve_event_effect_for_state(VIR_DOMAIN_PMSUSPENDED, 0, 0, &name),
                     tnve_event_lookup(VIR_DOMAIN_EVENT_PMSUSPENDED, 0)->effect);
    ck_assert_int_eq(
        tnve_event_effect_for_state(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SAVED, 0, &name),
        tnve_event_lookup(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SAVED)->effect);
    ck_assert_int_eq(
        tnve_event_effect_for_state(VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_DESTROYED, 0, &name),
        tnve_event_lookup(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED)->effect);
    ck_assert_int_eq(tnve_event_effect_for_state(VIR_DOMAIN_CRASHED, 0, 0, &name),
                     tnve_event_lookup(VIR_DOMAIN_EVENT_CRASHED, 0)->effect);
    ck_assert_int_eq(tnve_event_effect_for_state(VIR_DOMAIN_RUNNING, 0, 0, &name),
                     tnve_event_lookup(VIR_DOMAIN_EVENT_STARTED, 0)->effect);
    ck_assert_str_eq(tnve_effect_name(TNVE_EFFECT_INACTIVE), "inactive");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tnve-events");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_issue_mapping);
    tcase_add_test(tc, test_unknown_and_table);
    tcase_add_test(tc, test_listing_matches_events);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
