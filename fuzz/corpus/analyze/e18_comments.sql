/*controller:x*/ SELECT 1 -- trailing
/* a /* b */ c */ # mysql
/*+ INDEX(t) */ /*!40001 SQL_NO_CACHE */ /*traceparent='00-abc-01'*/