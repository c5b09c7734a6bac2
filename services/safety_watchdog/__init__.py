"""safety_watchdog: the survival stack on live sensors → posture in DOLPHIN_SAFETY."""
