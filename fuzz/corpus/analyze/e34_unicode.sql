SELECT  naïve,
	'日本語' FROM t WHERE x = 'ü'